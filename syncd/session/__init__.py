"""Session drivers: run one protocol conversation against a tree, over a Channel."""
