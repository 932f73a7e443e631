"""FaaSLoad's monitor: samples the cgroups of function containers and answers the loader's queries."""
