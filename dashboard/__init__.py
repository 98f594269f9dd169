"""The Streamlit dashboard: a read-only consumer of the run store and journals."""
