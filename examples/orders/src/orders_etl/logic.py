"""The example's one transformation."""

from collections import defaultdict


def aggregate(customers, orders, region, currency="EUR"):
    """Order totals per customer of `region`, largest first."""
    in_region = {c["id"]: c["name"] for c in customers if c["region"] == region}
    totals = defaultdict(float)
    for order in orders:
        if order["customer_id"] in in_region:
            totals[in_region[order["customer_id"]]] += float(order["amount"])
    rows = [{"customer": name, "total": round(total, 2), "currency": currency}
            for name, total in sorted(totals.items(), key=lambda kv: -kv[1])]
    return {"rows": rows, "total": round(sum(totals.values()), 2)}
