//! The tonic `Routes` service: a thin adapter over [`Forwarder`].

use super::{ForwardError, Forwarder};
use jr_proto::v1::routes_server::{Routes, RoutesServer};
use jr_proto::v1::{
    ListRoutesRequest, ListRoutesResponse, ReplayRouteRequest, ReplayRouteResponse,
};
use tonic::{Request, Response, Status};

/// The `Routes` service of a running forwarder.
pub struct RoutesService {
    forwarder: Forwarder,
}

impl RoutesService {
    pub fn server(forwarder: Forwarder) -> RoutesServer<RoutesService> {
        RoutesServer::new(RoutesService { forwarder })
    }
}

impl From<ForwardError> for Status {
    fn from(e: ForwardError) -> Status {
        match e {
            ForwardError::NoRoute(_) => Status::not_found(e.to_string()),
            ForwardError::NothingToReplay => Status::failed_precondition(e.to_string()),
            other => {
                // Database detail stays in the server's log.
                tracing::error!(error = %other, "routes request failed");
                Status::unavailable("the server cannot read its route state; see its log")
            }
        }
    }
}

#[tonic::async_trait]
impl Routes for RoutesService {
    async fn list_routes(
        &self,
        _: Request<ListRoutesRequest>,
    ) -> Result<Response<ListRoutesResponse>, Status> {
        let routes = self.forwarder.list().await?;
        Ok(Response::new(ListRoutesResponse { routes }))
    }

    async fn replay_route(
        &self,
        request: Request<ReplayRouteRequest>,
    ) -> Result<Response<ReplayRouteResponse>, Status> {
        let r = request.into_inner();
        if let Some(until) = r.until_usec {
            if until < r.since_usec {
                return Err(Status::invalid_argument("--until is before --since"));
            }
        }
        let (first_id, last_id) = self
            .forwarder
            .replay(&r.name, r.since_usec, r.until_usec)
            .await?;
        Ok(Response::new(ReplayRouteResponse { first_id, last_id }))
    }
}
