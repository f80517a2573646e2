"""What `segpipe run --deployment` says of a run that failed on the worker."""

from segpipe.flows.submit import failed_on_input


def test_a_run_that_failed_on_bad_input_is_said_as_the_local_run_says_it():
    """A deployment run refused for a dataset the catalog lacks ended in exit 1 with Prefect's
    "Flow run encountered an exception: CatalogError: ..." where the local run says one line, exit 2."""
    message = "Flow run encountered an exception: CatalogError: ds/catalog.yaml: no dataset named 'nosuch' (known: tiny)"
    assert failed_on_input(message) == "ds/catalog.yaml: no dataset named 'nosuch' (known: tiny)"
    assert failed_on_input("Flow run encountered an exception: FileNotFoundError: [Errno 2] No such file: 'x'") == (
        "[Errno 2] No such file: 'x'")
    assert failed_on_input("Flow run encountered an exception: ValueError: a bug") is None  # a failure, not bad input
    assert failed_on_input("Flow run was cancelled") is None
