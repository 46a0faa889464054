"""The paper's tables and figures from the workflow's runs (`unilearn tables`, `unilearn figure`),
and the run layout the Snakefile and they share."""
