//! Where the brokers are and how to talk to them.

use rdkafka::ClientConfig;

/// Connection settings shared by producers, consumers and the admin client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Client id reported to the brokers.
    pub client_id: String,
    /// How long a request may take before it fails, in milliseconds.
    pub request_timeout_ms: u32,
    /// Consumers see only committed transactions (`isolation.level=read_committed`).
    pub read_committed: bool,
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaConfigError {
    /// No brokers, or a broker without a port.
    #[error("brokers {0:?}: expected host:port[,host:port…]")]
    Brokers(String),
    /// A timeout of zero.
    #[error("request_timeout_ms must be positive")]
    Timeout,
}

impl KafkaConfig {
    /// Settings for the given brokers, with defaults for the rest.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            client_id: "arus".to_owned(),
            request_timeout_ms: 30_000,
            read_committed: false,
        }
    }

    /// Checks the settings without connecting.
    pub fn validate(&self) -> Result<(), KafkaConfigError> {
        let valid = !self.brokers.trim().is_empty()
            && self.brokers.split(',').all(|b| {
                b.trim().rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            });
        if !valid {
            return Err(KafkaConfigError::Brokers(self.brokers.clone()));
        }
        if self.request_timeout_ms == 0 {
            return Err(KafkaConfigError::Timeout);
        }
        Ok(())
    }

    /// The librdkafka settings common to every client.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("socket.timeout.ms", self.request_timeout_ms.to_string());
        if self.read_committed {
            config.set("isolation.level", "read_committed");
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_catches_bad_brokers() {
        assert_eq!(KafkaConfig::new("127.0.0.1:9092,kafka-2:9093").validate(), Ok(()));
        for bad in ["", "localhost", "localhost:", ":9092", "host:port", "a:1,"] {
            assert!(KafkaConfig::new(bad).validate().is_err(), "{bad:?}");
        }
    }
}
