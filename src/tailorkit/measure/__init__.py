"""tailorkit.measure"""
