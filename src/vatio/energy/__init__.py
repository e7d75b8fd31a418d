"""Energy features of a site: tariffs and costs, comparisons, baseload, peak demand, import and export.

Everything is computed at query time from the store's rollups and the site's
tariff history, so late data and tariffs changed after the fact are always
reflected. Start at :class:`vatio.energy.site.SiteEnergy`.
"""
