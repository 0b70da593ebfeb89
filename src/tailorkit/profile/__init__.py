"""tailorkit.profile"""
