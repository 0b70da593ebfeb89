"""tailorkit.segment"""
