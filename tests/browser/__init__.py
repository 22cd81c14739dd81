"""The browser tier: the course driven in JupyterLab and Voilà by Chromium (see harness.py)."""
