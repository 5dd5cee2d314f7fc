"""Streamlit-aware helpers: cached resources, session keys, job polling, Plotly figures, shared widgets."""
