"""The network's building blocks: activations, losses, initializers, regularizers, metrics
and layers. Each concept is defined once here; the backends compute them."""
