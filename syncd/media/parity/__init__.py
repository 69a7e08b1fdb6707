"""Parity volumes: an export that survives lost and damaged volumes (SPEC.md 9.10).

`syncd export --parity N` adds N parity volumes to the K data volumes of an export. Each
data volume's pack files form one byte stream; the streams are cut into blocks at equal
offsets and every stripe of K blocks is Reed-Solomon coded by zfec into N parity blocks.
The far side rebuilds any data volume from any K sound blocks of each stripe it spans:
with up to N volumes absent, or damage spread over the set so that no stripe has lost
more than N blocks. A rebuilt volume is byte for byte the one that was written (its
index's checksum and signature verify as usual) and goes through the normal import.

- geometry.py: block size, how much room a parity volume needs, limits of the code;
- code.py: the erasure code (zfec), one stripe at a time;
- streams.py: a volume's stream read and written block by block, across its files;
- encode.py: the exporting side; rebuild.py and sources.py: the far side.
"""
