"""Hook callables receive the run report as their one argument."""


def notify(report):
    return report["status"]


def archive(report, folder="archive"):
    return folder
