"""`python -m reports`: the HTML report from reports/allure-results (see audit/report.py)."""
