"""Plain functions: keyword arguments, defaults, **kwargs."""


def hello(name, greeting="hello"):
    return f"{greeting} {name}"


def total(rows, currency="EUR"):
    return {"total": sum(rows), "currency": currency}


def anything(**kwargs):
    return kwargs


def nothing():
    return None


def pair(left, right, *, sep="-"):
    return f"{left}{sep}{right}"
