"""tailorkit.learn"""
