def notify(report):
    return report
