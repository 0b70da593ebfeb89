"""tailorkit.store"""
