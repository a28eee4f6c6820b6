"""Who the patient is: demographics from each site, and the central MDM links between sites.

``demographics`` reads a site's EHR_STATUS into a FHIR Patient (pure); ``routing`` finds the
sites holding the person a central resource is about, through HAPI's MDM links.
"""
