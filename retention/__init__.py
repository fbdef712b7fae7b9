"""Retention metrics of the source documents (CRR, churn, revenue churn, NRR, CLV, repeat
purchase rate, NPS, cohort retention) by segment, and their plots."""
