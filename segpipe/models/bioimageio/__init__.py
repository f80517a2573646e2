"""BioImage Model Zoo packages: a segpipe model as one zip others can run, and back.

::

    export_model(Model.open("runs/bbbc007/model"), Path("bbbc007.zip"))   # bioimageio.spec 0.5 zip
    import_model(Path("bbbc007.zip"), Path("models/bbbc007"))            # a segpipe model folder again

A package holds the weights twice: ``pytorch_state_dict`` (segpipe's plain weights and an
architecture file, ``segpipe_architecture.py``, that subclasses the network segpipe trains, so
the same weights load into both) and ``torchscript`` (the network scripted, which deepImageJ and
QuPath run without Python). Both output probabilities: the activations segpipe applies (a softmax
over the classes, a sigmoid on every extra channel: the distance, boundary and flow channels of
instance models) are part of the network. The input is the raw image; its ``preprocessing`` is
segpipe's normalization in the format's terms. ``config.segpipe`` holds the whole model card,
which is how a package comes back into segpipe; instance separation (a watershed on the distance
channel, or grouping pixels by where the flow takes them) stays segpipe's own.

Test tensors are a raw input (synthetic, seeded, unless a real image is given) and the output of
segpipe's network on it; ``export_model(test=True)`` runs bioimageio.core's model test on the
zip, offline, before it is put in place.

bioimageio.core and bioimageio.spec are an optional extra, imported inside the functions.

One idea per module: :mod:`.export` writes a package (:mod:`.files` its files, :mod:`.description`
its ``rdf.yaml``, :mod:`.readme` its README, :mod:`.architecture` the network with its activations,
:mod:`.preprocessing` the normalization, :mod:`.sizes` the input sizes, :mod:`.samples` the test
input) and :mod:`.load` reads one back; :mod:`.extra` requires and quiets the optional extra,
:mod:`.summary` puts its reports in one line.
"""

from segpipe.models.bioimageio.export import export_model
from segpipe.models.bioimageio.load import import_model
from segpipe.models.bioimageio.readme import package_readme
from segpipe.models.bioimageio.samples import check_sample

__all__ = ["check_sample", "export_model", "import_model", "package_readme"]
