"""Models: `Model` (functional or subclassed), `Sequential`, saving and loading, cloning."""
from .model import Functional, Model  # noqa: F401
from .sequential import Sequential  # noqa: F401
from .io import load_model, save_model  # noqa: F401,E402
from .cloning import clone_model  # noqa: F401,E402
from .saving import model_from_json  # noqa: F401,E402
from .seq2seq import Seq2Seq  # noqa: F401,E402
