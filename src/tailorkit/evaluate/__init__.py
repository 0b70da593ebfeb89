"""tailorkit.evaluate"""
