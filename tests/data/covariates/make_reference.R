# Reference fits with separate gate and expert covariates, by R flexmix (many random starts).
#
#   Rscript tests/data/covariates/make_reference.R [nrep [CASE ...]]   # from the repository root
#
# Writes into tests/data/covariates/, for each case below, CASE.csv (the columns used) and
# CASE.flexmix.json (every start's log-likelihood, the best fit's estimate, provenance).
#
# Cases (k = 2 and 3):
#   npreg_poly   flexmix's own example: yn ~ x + I(x^2), no concomitant (constant mixing
#                proportions: a gate without covariates), data NPreg (package flexmix)
#   ais_sep      Bfat ~ BMI with concomitant FLXPmultinom(~ Ht): experts on BMI, gate on
#                height only (separate covariates), data ais (package sn)
#   ais_both     Bfat ~ BMI with concomitant FLXPmultinom(~ Ht + BMI): the gate on both, the
#                experts on BMI only
# flexmix's Gaussian sigma is the weighted root mean squared residual times sqrt(n / (n - p)),
# so its log-likelihood is slightly below the maximum: the exact MLE reaches at least as much.

suppressPackageStartupMessages({
  library(flexmix)
  library(sn)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
NREP <- if (length(args) >= 1) as.integer(args[1]) else 30L
SEED0 <- 31000L
CONTROL <- list(iter.max = 2000L, tolerance = 1e-10, minprior = 0)
OUT <- file.path("tests", "data", "covariates")
if (!dir.exists(OUT)) stop("run from the repository root (", OUT, " not found)")

env <- new.env()
data("NPreg", package = "flexmix", envir = env)
data("ais", package = "sn", envir = env)
npreg <- data.frame(x = env$NPreg$x, yn = env$NPreg$yn)
ais <- data.frame(BMI = as.numeric(env$ais$BMI), Ht = as.numeric(env$ais$Ht),
                  Bfat = as.numeric(env$ais$Bfat))

CASES <- list(
  list(name = "npreg_poly", data = npreg, formula = yn ~ x + I(x^2), concomitant = NULL,
       gate = "none"),
  list(name = "ais_sep", data = ais, formula = Bfat ~ BMI, concomitant = ~ Ht, gate = "~ Ht"),
  list(name = "ais_both", data = ais, formula = Bfat ~ BMI, concomitant = ~ Ht + BMI,
       gate = "~ Ht + BMI")
)

fit_k <- function(cs, k) {
  lls <- rep(-Inf, NREP)
  best <- NULL
  for (rep in seq_len(NREP)) {
    set.seed(SEED0 + 1000L * k + rep)
    m <- tryCatch({
      if (is.null(cs$concomitant)) {
        flexmix(cs$formula, k = k, data = cs$data, model = FLXMRglm(), control = CONTROL)
      } else {
        flexmix(cs$formula, k = k, data = cs$data, model = FLXMRglm(),
                concomitant = FLXPmultinom(cs$concomitant), control = CONTROL)
      }
    }, error = function(e) NULL)
    if (is.null(m) || m@k != k) next
    lls[rep] <- as.numeric(logLik(m))
    if (lls[rep] >= max(lls)) best <- m
  }
  p <- parameters(best)
  g <- if (is.null(cs$concomitant)) NULL else parameters(best, which = "concomitant")
  list(k = k, n_starts = NREP, n_ok = sum(is.finite(lls)), loglik = max(lls),
       n_best = sum(abs(lls - max(lls)) < 1e-4), df = attr(logLik(best), "df"),
       starts_loglik = lls,
       expert_coef = unname(lapply(seq_len(ncol(p)), function(j) unname(p[rownames(p) != "sigma", j]))),
       expert_rows = rownames(p)[rownames(p) != "sigma"],
       sigma = unname(p["sigma", ]), prior = unname(prior(best)),
       gate_coef = if (is.null(g)) NULL else unname(lapply(seq_len(ncol(g)), function(j) unname(g[, j]))),
       gate_rows = if (is.null(g)) NULL else rownames(g))
}

versions <- list(R = R.version.string, flexmix = as.character(packageVersion("flexmix")),
                 sn = as.character(packageVersion("sn")), jsonlite = as.character(packageVersion("jsonlite")))
if (length(args) >= 2) CASES <- Filter(function(cs) cs$name %in% args[-1], CASES)
for (cs in CASES) {
  write.csv(cs$data, file.path(OUT, paste0(cs$name, ".csv")), row.names = FALSE)
  fits <- lapply(2:3, function(k) { message(sprintf("%s k=%d", cs$name, k)); fit_k(cs, k) })
  rec <- list(name = cs$name, n = nrow(cs$data), versions = versions,
              command = "Rscript tests/data/covariates/make_reference.R",
              formula = deparse(cs$formula), concomitant = cs$gate,
              starts = sprintf("flexmix's random partitions, set.seed(%d + 1000 * k + rep), rep = 1..%d", SEED0, NREP),
              control = "iter.max = 2000, tolerance = 1e-10, minprior = 0",
              fits = fits)
  writeLines(toJSON(rec, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
             file.path(OUT, paste0(cs$name, ".flexmix.json")))
}
