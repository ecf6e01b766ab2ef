//! `/scenarios/{scenario_id}/verifiers`: a scenario's programmatic checks as a Python
//! package users run offline (see [`crate::verify::bundle`]).

use actix_web::http::header::ContentDisposition;
use actix_web::{web, HttpResponse};

use super::AppState;
use crate::error::ErrorBody;
use crate::error::{ApiError, ErrorCode};
use crate::verify::bundle::BundleError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/scenarios/{scenario_id}/verifiers/bundle")
            .route(web::get().to(download_bundle)),
    );
}

impl From<BundleError> for ApiError {
    fn from(error: BundleError) -> Self {
        match error {
            BundleError::NoChecks(_) => {
                ApiError::new(ErrorCode::VerifiersNotFound, error.to_string())
            }
            other => {
                tracing::error!(error = %other, "could not build a verifier bundle");
                ApiError::new(ErrorCode::Internal, "Could not build the verifier bundle")
            }
        }
    }
}

/// The zip archive of the scenario's verifiers, built from the loaded catalog.
#[utoipa::path(get, path = "/scenarios/{scenario_id}/verifiers/bundle", tag = "scenarios", summary = "The scenario's verifiers as a Python package (zip)", params(("scenario_id" = String, Path, description = "The scenario")), responses((status = 200, description = "application/zip holding <scenario_id>_verifiers", content_type = "application/zip", body = Vec<u8>), (status = 404, description = "No such scenario (or task)", body = ErrorBody)))]
async fn download_bundle(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let scenario_id = path.into_inner();
    let scenario = state.catalog.get(&scenario_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ScenarioNotFound,
            format!("Scenario '{scenario_id}' not found"),
        )
    })?;
    let bundle = scenario.verifier_bundle()?;
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header(ContentDisposition::attachment(bundle.file_name))
        .body(bundle.bytes))
}
