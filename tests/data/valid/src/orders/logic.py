def aggregate(rows, currency):
    return {"total": len(rows), "currency": currency}
