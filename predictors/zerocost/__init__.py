"""Zero-cost proxies on a numpy interpreter of the IR (:mod:`nas.predictors.zerocost.engine`)."""
