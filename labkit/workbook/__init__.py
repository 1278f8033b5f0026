"""The workbook's machinery: running notebooks as reports, sweeps, student copies, checks, widgets.

Technique modules live flat in labkit/; this subpackage is what turns notebooks into a workbook.
"""
