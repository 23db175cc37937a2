"""causal_wm.data"""
