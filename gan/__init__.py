"""mmdkit.gan: GAN losses built on mmdkit's statistics, toy data, metrics, one trainer."""
if __name__ != "mmdkit.gan":
    raise ImportError(f"this package must be imported as mmdkit.gan, not {__name__!r}")
