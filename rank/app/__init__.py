"""The application around the library: the ``riskrank`` command line, the demo and the
fetching of public data sets."""
