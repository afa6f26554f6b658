"""Spatio-temporal analyses (interest drift, forecasting, anomalies) through the model interface.

Reserved for the analysis issues; the synthetic generator's planted truth
(`stjax.data.synthetic.SyntheticTruth`) is what those analyses will be tested against.
"""
