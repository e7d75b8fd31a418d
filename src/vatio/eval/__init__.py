"""Evaluation: injected labelled anomalies, baselines, event-level metrics, reports.

``vatio eval`` (:func:`vatio.eval.report.main`) scores simulated and real
homes with every registered detector, picks each detector's threshold on one
split of households and reports on the other.
"""
