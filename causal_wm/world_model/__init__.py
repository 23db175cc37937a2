"""causal_wm.world_model"""
