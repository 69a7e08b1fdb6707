"""Tree -> snapshot: walk, cut files into pieces, hash, build the Merkle tree."""
