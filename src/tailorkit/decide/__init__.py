"""tailorkit.decide"""
