"""placeholder replaced below"""
DEFAULT_MARGIN = 0.5
