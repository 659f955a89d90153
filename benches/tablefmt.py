"""Number formatting shared by report.py and scale_report.py (imported from the script's folder)."""


def fmt_n(x):
    if x is None:
        return "–"
    if x >= 10000:
        return "%.1fk" % (x / 1000)
    if x >= 100:
        return "%.0f" % x
    return "%.2f" % x
