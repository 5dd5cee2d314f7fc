"""Automated security assessment: findings, severities and the documented, cited thresholds behind them.

Pure: no store, no torch. `severity.py` holds the scales (each threshold with its reason and citation), and
`findings.py` the `Finding` a scan reports. The scan itself (a study) is `dlsec_core.studies.scan`.
"""
