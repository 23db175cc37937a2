"""causal_wm.crl"""
