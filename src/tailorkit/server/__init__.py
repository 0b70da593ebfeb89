"""tailorkit.server"""
