"""What the attention bench measures: its variants, modules and sequence lengths.

Its own module, below the package's ``__init__`` (the command), ``runner.py`` (the parent) and
``measure.py`` (the child), so that each reads the same table without importing another.
"""

MIB = 2**20
# attention pattern and SDPA backend of each variant (the windowed ones also take --window)
VARIANTS: dict[str, dict] = {
    "full/math": {"attention": "full", "backend": "math"},
    "full/sdpa": {"attention": "full", "backend": "sdpa"},
    "sliding_window": {"attention": "sliding_window", "backend": "sdpa"},
    "longformer": {"attention": "longformer", "backend": "sdpa", "global_tokens": (0,)},
}
MODULES = ("attention", "encoder_layer")
LENGTHS = (512, 1024, 2048, 4096, 8192, 16384)
