"""A scikit-learn Pipeline that also exposes ``estimate_pdf`` of its final pzkit estimator."""

from sklearn.pipeline import Pipeline, _name_estimators
from sklearn.utils._metadata_requests import _routing_enabled, process_routing
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted


def _final_estimator_has_estimate_pdf(pipeline):
    return hasattr(pipeline._final_estimator, "estimate_pdf")


class PhotoZPipeline(Pipeline):
    """``sklearn.pipeline.Pipeline`` plus :meth:`estimate_pdf`.

    ``estimate_pdf`` transforms ``X`` through every step and calls the final estimator's
    ``estimate_pdf``. With metadata routing enabled, it receives the metadata its final step requested for
    ``predict`` (for example ``est.set_predict_request(nb=True)``), because scikit-learn's routing knows only
    its own method names.
    """

    @available_if(_final_estimator_has_estimate_pdf)
    def estimate_pdf(self, X, **params):
        check_is_fitted(self)
        Xt = X
        if not _routing_enabled():
            for _, _, transform in self._iter(with_final=False):
                Xt = transform.transform(Xt)
            return self.steps[-1][1].estimate_pdf(Xt, **params)
        routed = process_routing(self, "predict", **params)
        for _, name, transform in self._iter(with_final=False):
            Xt = transform.transform(Xt, **routed[name].transform)
        return self.steps[-1][1].estimate_pdf(Xt, **routed[self.steps[-1][0]].predict)


def make_pipeline(*steps, memory=None, verbose=False):
    """Like :func:`sklearn.pipeline.make_pipeline`, returning a :class:`PhotoZPipeline`."""
    return PhotoZPipeline(_name_estimators(steps), memory=memory, verbose=verbose)
