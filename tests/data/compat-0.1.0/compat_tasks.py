import os


def double(n):
    return {"value": n * 2, "when": __import__("datetime").date(2026, 1, 2)}


def maybe_fail(x):
    print("second got", x["value"])
    if os.path.exists("fail.marker"):
        raise RuntimeError("told to fail")
    return x["value"] + 1
