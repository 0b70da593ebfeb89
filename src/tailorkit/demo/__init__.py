"""tailorkit.demo"""
