"""Zero-cost proxies on a numpy interpreter of the IR (:mod:`predictors.zerocost.engine`)."""
