//! The tower layer in front of every gRPC service: it asks [`Auth`] about
//! each request, answers a refused one with its gRPC status at once, and
//! hands an allowed caller's [`Principal`](super::Principal) to the
//! service through the request's extensions.

use super::Auth;
use futures::future::{Either, Ready};
use std::task::{Context, Poll};
use tonic::codegen::http::{Request, Response};
use tower::{Layer, Service};

/// Installs [`AuthService`] around the router.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Auth,
}

impl AuthLayer {
    pub fn new(auth: Auth) -> AuthLayer {
        AuthLayer { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Auth,
}

impl<S, B, R> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    R: Default,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<R>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self
            .auth
            .check(req.uri().path(), req.headers(), req.extensions())
        {
            Ok(principal) => {
                if let Some(p) = principal {
                    req.extensions_mut().insert(p);
                }
                Either::Left(self.inner.call(req))
            }
            Err(status) => {
                tracing::info!(path = req.uri().path(), %status, "call refused");
                Either::Right(futures::future::ready(Ok(status.into_http())))
            }
        }
    }
}
