"""tailorkit.cli"""
