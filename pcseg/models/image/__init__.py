"""2D networks."""
