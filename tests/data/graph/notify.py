def alert(report):
    return report


def merge(parts, chunks):
    return parts + chunks
