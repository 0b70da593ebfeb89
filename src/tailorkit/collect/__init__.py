"""tailorkit.collect"""
