"""The modules of the language reference's section 1 example."""


def extract(region, day):
    return [{"region": region, "day": day}]


def fetch_table(table):
    return table
