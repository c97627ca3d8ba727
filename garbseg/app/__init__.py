"""The dashboard's library side: ``ui`` (the only module that imports Streamlit: cached loaders,
session state, widgets shared by pages), ``uploads`` (checking what users hand in) and ``segment``
(one photo through one model)."""
